"""colcon/ament_python build of the crawler_driver package (pip installs it via pyproject)."""

from setuptools import setup

PACKAGE = "crawler_driver"

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
    description="ROS 2 driver of the inspection crawler's microcontroller",
    license="Proprietary",
    entry_points={"console_scripts": ["driver_node = crawler_driver.driver_node:main"]},
)
