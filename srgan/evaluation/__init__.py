"""srgan/evaluation"""
