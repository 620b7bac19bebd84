"""placeholder"""
def detect(root):
    return False
