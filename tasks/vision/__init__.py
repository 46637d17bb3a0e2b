"""Vision head: image-patch self-attention (ViT) versus a CNN on small grey-scale image sets.

Fashion-MNIST (full, from a Debian package) is the default data set; MNIST-5k (from a PyPI
wheel) is the small one, and MNIST and CIFAR-10 load through torchvision's downloaders where
the web is reachable.
"""

from suite.head import Head

HEAD = Head("vision", "image classification: patch self-attention (ViT) versus CNNs",
            module="VisionModule", datamodule="VisionDataModule", monitor=("val/acc", "max"),
            # the model is built for the data set the data module serves, at the size it serves
            links=(("data.dataset", "model.dataset"), ("data.image_size", "model.image_size")))
