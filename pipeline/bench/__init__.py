"""Toy-scale fusion benchmark: task generators, source training, evaluation."""
