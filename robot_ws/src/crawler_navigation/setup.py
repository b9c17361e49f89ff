"""colcon/ament_python build of the crawler_navigation package (pip installs it via pyproject)."""

from setuptools import setup  # type: ignore[import-untyped]

PACKAGE = "crawler_navigation"

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
    description="Localization and mission execution nodes of the inspection crawler",
    license="Proprietary",
    entry_points={"console_scripts": [
        "slam_node = crawler_navigation.slam_node:main",
        "localizer_node = crawler_navigation.localizer_node:main",
        "mission_executor_node = crawler_navigation.mission_executor_node:main",
    ]},
)
