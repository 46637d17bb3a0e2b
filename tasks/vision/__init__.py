"""Vision head: image-patch self-attention (ViT) versus a CNN on small grey-scale image sets.

Fashion-MNIST (full, from a Debian package) is the default data set; MNIST-5k (from a PyPI
wheel) is the small one, and MNIST and CIFAR-10 load through torchvision's downloaders where
the web is reachable. The CLI imports the classes named below only when the head is used.
"""

MODULE = "tasks.vision.module.VisionModule"
DATAMODULE = "tasks.vision.data.VisionDataModule"
