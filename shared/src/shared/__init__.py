"""The library the four volunteer-system services share."""
