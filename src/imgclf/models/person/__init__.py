"""The pretrained person detector's network, below every stage that runs it: SSDLite-MobileNetV2
(ssdlite, TensorFlow-exact), its anchors and box coder (anchors: DecodedSSD is the network with its
box decoding), and its weights from the package index (weights). imgclf.detection answers photos
with it; a training run on photos of people races a linear head on its scores (classifier)."""

import functools

SIZE = 300  # the input side the graphs were exported for (torch-free here: a scan in ONNX Runtime needs it)
GRIDS = (19, 10, 5, 3, 2, 1)  # feature map sides at a 300x300 input
PER_PLACE = (3, 6, 6, 6, 6, 6)  # anchors at each place of each map (anchors.anchors)


@functools.lru_cache(maxsize=1)
def mirror_order():
    """(A,) int array: for each anchor, the anchor its left-right mirror image lands on (the same map,
    row and shape, the column counted from the other side). The layout is symmetric, so an output of
    the mirrored photo, reordered so, speaks of the same place as the photo's own."""
    import numpy as np

    out, start = [], 0
    for grid, k in zip(GRIDS, PER_PLACE):
        out.append(start + np.arange(grid * grid * k).reshape(grid, grid, k)[:, ::-1].reshape(-1))
        start += grid * grid * k
    return np.concatenate(out)
