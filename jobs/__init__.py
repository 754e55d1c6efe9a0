"""Jobs, schedules, sensors and the Definitions object."""
