"""srgan/training"""
