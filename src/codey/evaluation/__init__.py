"""Measuring how good the code is: HumanEval and an infilling evaluation built on it."""
