"""Shared machinery: the base task, trainer defaults, parameter groups and safe weight loading."""
