"""Instrumentations of the client's calls: `apex_grpc.instrumentation.otel` (extra ``otel``).

``import apex_grpc`` never loads this package.
"""
