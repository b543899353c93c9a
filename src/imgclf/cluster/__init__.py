"""imgclf on a Ray cluster (`pip install 'imgclf[ray]'`): batch prediction with Ray Data
(cluster/predict.py) and PyTorch DDP training with Ray Train (cluster/train.py). Ray is imported
inside these modules' functions only, so `import imgclf` never needs it.

The same code runs on a local cluster (`ray.init()`), `ray start` nodes, `ray://HOST:10001` and
KubeRay; data, runs and outputs must be paths every node can read (a shared filesystem or, for
prediction sources and outputs, a pyarrow filesystem URI such as s3://).
"""
