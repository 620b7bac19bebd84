"""placeholder"""
def build(root, assets):
    raise NotImplementedError
