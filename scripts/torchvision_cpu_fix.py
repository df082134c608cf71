"""Environment set-up, not part of mmbench: lets torchvision 0.28.0 (built for CUDA) import beside the CPU build of
torch 2.13.0 that scripts/setup.sh installs (DESIGN.md, "Environment facts"). Its import otherwise fails with
"operator torchvision::nms does not exist"; declaring the two detection ops first fixes it, and only the
detection ops stay unusable. setup.sh copies this file into the virtual environment with a .pth line that
imports it, and only when torchvision fails that way there. It imports nothing at start-up: a finder declares
the ops the first time torchvision is imported, then steps aside.
"""

import importlib.abc
import sys


class _DeclareTorchvisionOps(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        sys.meta_path.remove(self)
        import torch

        if torch.version.cuda is None:
            lib = torch.library.Library("torchvision", "FRAGMENT")
            lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
            _DeclareTorchvisionOps.library = lib
        return None  # the ordinary finders import torchvision now


sys.meta_path.insert(0, _DeclareTorchvisionOps())
