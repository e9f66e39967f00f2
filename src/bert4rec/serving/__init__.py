"""Serving: the Recommender over a model folder, its movie catalogue, the REST API with its schemas and web page,
and ONNX export. Imports no training code."""
