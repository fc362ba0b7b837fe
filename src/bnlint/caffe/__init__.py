"""What Caffe text means: schema, net view, phases, layer parameters, shapes, weights."""
