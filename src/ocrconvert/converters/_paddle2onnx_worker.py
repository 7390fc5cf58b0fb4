"""Runs paddle2onnx in its own process: it calls sys.exit (and can abort) on failure."""
import sys
import warnings


def main() -> int:
    program, params, out, opset = sys.argv[1:5]
    warnings.simplefilter("ignore")
    import paddle2onnx

    paddle2onnx.export(program, params, out, opset_version=int(opset), enable_onnx_checker=True,
                       auto_upgrade_opset=False, verbose=True)  # never raise the opset silently
    return 0


if __name__ == "__main__":
    sys.exit(main())
