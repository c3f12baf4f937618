"""stackblaze.logs"""
