"""stackblaze.build"""
