"""Names of the Caffe forks bnlint recognises, as messages say them.

Shared by the layer table (which fork owns a layer type) and `known` (which fork owns
a field), so that both name a fork the same way.
"""

SSD = "the SSD fork (weiliu89/caffe)"
CEIL = "a ceil-mode pooling fork (e.g. shicai's DenseNet, soeaver's caffe-model)"
SEGNET = "the SegNet/ENet fork (alexgkendall/caffe-segnet)"
SHUFFLE = "a ShuffleNet fork (ShuffleChannel layer)"
FRCNN = "py-faster-rcnn / R-FCN's fork"
NVCAFFE = "NVIDIA Caffe (NVCaffe)"
INTEL = "Intel Caffe"
INTERP = "a PSPNet/DeepLab fork (Interp layer)"
PROPOSAL = "a Faster R-CNN fork with a C++ Proposal layer"
RELU6 = "a fork with a ReLU6 layer"
DEPTHWISE = "a fork with a DepthwiseConvolution layer"
CONV_DEPTHWISE = "a fork with a ConvolutionDepthwise layer"
ELTWISE_AFFINE = "a fork with an EltwiseAffine layer"
AXPY = "SENet's fork (Axpy layer)"
