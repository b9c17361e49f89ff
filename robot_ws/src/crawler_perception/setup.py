"""colcon/ament_python build of the crawler_perception package (pip installs it via pyproject)."""

from setuptools import setup

PACKAGE = "crawler_perception"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=[PACKAGE],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="Crawler team",
    maintainer_email="dev@crawler.invalid",
    description="Defect detection and mapping nodes of the inspection crawler",
    license="Proprietary",
    entry_points={"console_scripts": [
        "defect_detector = crawler_perception.detector_node:main",
        "defect_mapper = crawler_perception.mapper_node:main",
    ]},
)
