"""stackblaze.engine"""
