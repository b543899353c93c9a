"""The pretrained person detector's network, below every stage that runs it: SSDLite-MobileNetV2
(ssdlite, TensorFlow-exact), its anchors and box coder (anchors: DecodedSSD is the network with its
box decoding), and its weights from the package index (weights). imgclf.detection answers photos
with it; a training run on photos of people races a linear head on its scores (classifier)."""

SIZE = 300  # the input side the graphs were exported for (torch-free here: a scan in ONNX Runtime needs it)
