"""dlib's pretrained face models, from the package index: the HOG detector, 5-point alignment and
the ResNet face embedding rebuilt in PyTorch (model.FaceModel, resnet, engine). They sit with the
other networks so that both the face gallery (imgclf.faces) and a trained classifier whose
leaderboard kept the face embedding (training.faceprobe, inference) can use them.
"""
