"""Everything TensorRT, in one package, for TensorRT 8.6-10.x, 11.x and TensorRT for RTX.

- ``compat``: version parsing and dispatch, the one ``import tensorrt``, feature checks, engine
  compatibility decisions;
- ``plan``: build options and the build plan (pure functions, decided before TensorRT is touched);
- ``device``: the device seam (CUDA memory and streams through torch; tests pass host memory);
- ``calibrator``: the legacy implicit INT8 calibrator and its cache (TensorRT < 11);
- ``model_info``: classes, preprocessing and I/O of any ONNX (edgeopt's or not);
- ``build``: the build-engine stage; ``rtx``: TensorRT-RTX's targets and logged layer list;
  ``runner``: the engine runner.

Heavy imports (tensorrt, torch) happen inside functions so ``edgeopt --help`` never needs them.
"""
