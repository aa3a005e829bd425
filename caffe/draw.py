"""pycaffe's `caffe.draw`: NetParameter graphs through pydot and Graphviz (pycaffelite's)."""
from pycaffelite.draw import (BLOB_STYLE, LAYER_STYLE_DEFAULT, NEURON_LAYER_STYLE,
                              choose_color_by_layertype, draw_net, draw_net_to_file,
                              get_edge_label, get_layer_label, get_layer_lr_mult, get_pydot_graph)

__all__ = ["BLOB_STYLE", "LAYER_STYLE_DEFAULT", "NEURON_LAYER_STYLE", "choose_color_by_layertype",
           "draw_net", "draw_net_to_file", "get_edge_label", "get_layer_label",
           "get_layer_lr_mult", "get_pydot_graph"]
