"""Fields and layer types of Caffe forks that people bring along with their nets.

BVLC Caffe's schema does not have them, so a net using one cannot be read; the message then says
where the field or layer type comes from (and what BVLC Caffe offers instead, where something
does the same job) rather than guessing at a misspelling. Sources: each fork's caffe.proto and
layer registrations.
"""

_SSD = "the SSD fork (weiliu89/caffe, branch ssd)"
_RCNN = "the Fast/Faster R-CNN fork (rbgirshick/caffe-fast-rcnn)"
_RFCN = "the R-FCN fork (daijifeng001/caffe-rfcn)"
_SEGNET = "the SegNet fork (alexgkendall/caffe-segnet)"
_SEGNET_PSPNET = "the SegNet fork (alexgkendall/caffe-segnet) and PSPNet's (hszhao/PSPNet)"
_DEEPLAB = "the DeepLab v2 fork (deeplab-public-ver2, also in PSPNet's hszhao/PSPNet)"
_SHUFFLENET = "ShuffleNet's add-on layer (farmingyard/ShuffleNet)"
_DEPTHWISE = "a MobileNet add-on layer (yonghenglh6/DepthwiseConvolution)"
_PR3057 = ("BVLC Caffe's pull request #3057, which was never merged; several forks carry it "
           "(DenseNet-Caffe's nets use it)")

_SAME_AS_BN = "BVLC Caffe's BatchNorm followed by a Scale layer (bias_term: true) does that job"

# (message, field) -> (where it comes from, what BVLC Caffe has instead or None)
FIELDS = {
    ("PoolingParameter", "ceil_mode"): (
        _PR3057, "BVLC Caffe says round_mode: FLOOR for ceil_mode: false, and rounds up "
                 "(round_mode: CEIL) by default"),
    ("TransformationParameter", "crop_h"): (_SSD, "BVLC Caffe crops squares (crop_size)"),
    ("TransformationParameter", "crop_w"): (_SSD, "BVLC Caffe crops squares (crop_size)"),
    ("LayerParameter", "bn_param"): (_SEGNET_PSPNET, _SAME_AS_BN),
    ("LayerParameter", "interp_param"): (_DEEPLAB, None),
    ("LayerParameter", "shuffle_channel_param"): (_SHUFFLENET, None),
    ("LayerParameter", "psroi_pooling_param"): (_RFCN, None),
}
for _field in ("resize_param", "noise_param", "distort_param", "expand_param", "emit_constraint"):
    FIELDS["TransformationParameter", _field] = (_SSD, None)
for _field in ("annotated_data_param", "multibox_loss_param", "permute_param", "prior_box_param",
               "detection_output_param", "detection_evaluate_param", "norm_param",
               "video_data_param"):
    FIELDS["LayerParameter", _field] = (_SSD, None)
for _field in ("roi_pooling_param", "smooth_l1_loss_param"):
    FIELDS["LayerParameter", _field] = (_RCNN, None)
for _field in ("upsample_param", "dense_image_data_param"):
    FIELDS["LayerParameter", _field] = (_SEGNET, None)

# layer type -> (where it comes from, what BVLC Caffe has instead or None)
TYPES = {
    "SmoothL1Loss": (f"{_RCNN} (also in the SSD fork)", None),
    "ROIPooling": (_RCNN, None),
    "PSROIPooling": (_RFCN, None),
    "BN": (_SEGNET_PSPNET, _SAME_AS_BN),
    "Upsample": (_SEGNET, None),
    "DenseImageData": (_SEGNET, None),
    "Interp": (_DEEPLAB, None),
    "ShuffleChannel": (_SHUFFLENET, None),
    "DepthwiseConvolution": (_DEPTHWISE, 'type "Convolution" with group set to the number of '
                                         "channels computes the same"),
}
for _type in ("AnnotatedData", "DetectionEvaluate", "DetectionOutput", "MultiBoxLoss", "Normalize",
              "Permute", "PriorBox", "VideoData"):
    TYPES[_type] = (_SSD, None)


def _explain(origin, instead):
    return f"comes from {origin}" + (f"; {instead}" if instead else "")


def field_note(message_name, field):
    """Why `field` of message `message_name` is unknown, if it is a fork's field; else None."""
    known = FIELDS.get((message_name, field))
    return f"this field is not BVLC Caffe's: it {_explain(*known)}" if known else None


def type_note(type_name):
    """Why layer type `type_name` is unknown, if it is a fork's layer type; else None."""
    known = TYPES.get(type_name)
    return f"this layer type is not BVLC Caffe's: it {_explain(*known)}" if known else None
