import torch

# The machine is shared: keep every test single-threaded.
torch.set_num_threads(1)
