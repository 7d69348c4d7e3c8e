"""srgan/inference"""
