"""lakebert's Spark stages: each module is a pure DataFrame transform plus a thin `main()`.

    lakebert ingest|clean [--env local] [--set key=value ...]
"""
