"""Pretrained networks' released files: fetched once, verified, read without their framework, converted to Flax.

`download` finds a weights file (a path the user gives, the cache, or a sha256-checked download), `torch_pickle`
reads PyTorch state dicts without torch or arbitrary pickled code, `caffemodel` reads Caffe `.caffemodel` files
without Caffe or protobuf, and one module per network converts its names and layouts to Flax variables
(`inception`: the FID Inception-v3; `vgg`: torchvision's VGG19; `illust2vec`: Illustration2Vec's features).
"""
