"""Ground-station software: what the crew and the maintenance teams use off the robot."""
