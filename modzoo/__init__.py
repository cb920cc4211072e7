"""modzoo"""
