from edgeopt.bench.machine import driver_version


def test_driver_version_from_both_kernel_module_formats() -> None:
    # the open kernel module names its architecture between "Kernel Module" and the version
    assert driver_version("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.03  Release Build  (dvs@x)\n") == "580.159.03"
    assert driver_version("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n") == "535.104.05"
    assert driver_version("no driver here") is None
