"""NumPy reference forward: one op per Caffe layer type, an executor, comparisons."""
