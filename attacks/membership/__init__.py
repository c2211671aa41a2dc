"""Membership-inference attacks, one file each."""
