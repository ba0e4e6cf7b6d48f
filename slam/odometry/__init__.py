"""odometry"""
