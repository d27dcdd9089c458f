"""Fault injection under load: the reliability proof."""
