"""The main job: collection runs from the registry to audited credits."""

from shared.demo.runner import run_demo

__all__ = ["run_demo"]
