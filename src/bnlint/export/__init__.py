"""Exporters that take a Caffe net out of Caffe (one subpackage per target format)."""
