"""The shared map: keyframes, landmarks, observations, covisibility."""
