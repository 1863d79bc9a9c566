"""Green ``signal`` (work in progress)."""


def patches():
    """(module, name, value) for monkey.patch_signal."""
    return []
