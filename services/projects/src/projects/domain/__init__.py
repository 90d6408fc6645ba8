"""The rules of projects, applications and service hours, free of I/O."""
