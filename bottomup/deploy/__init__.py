"""Deployment: export the network with the test-time graph (ONNX, OpenVINO IR, INT8) and run it without torch.

* :mod:`bottomup.deploy.graph` (torch): :class:`~bottomup.deploy.graph.DecodeGraph`, the exported computation.
* :mod:`bottomup.deploy.export` (torch, onnx, openvino, nncf): writes the model file and its JSON.
* :mod:`bottomup.deploy.runtime` (numpy, OpenCV, scipy; onnxruntime or openvino; **no torch**):
  :class:`~bottomup.deploy.runtime.DeployedPoseEstimator` runs the exported files.

Nothing is imported here, so that ``import bottomup.deploy.runtime`` leaves torch unloaded.
"""
