"""stackblaze.server"""
