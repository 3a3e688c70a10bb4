"""Qt-free logic of MSK Planner: reconstruction, measurements, calibration, templating."""
