"""colcon/ament_python build of the crawler_sim package (pip installs it via pyproject)."""

from setuptools import setup

PACKAGE = "crawler_sim"

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
    description="Headless simulator of the inspection crawler",
    license="Proprietary",
    entry_points={"console_scripts": ["sim_node = crawler_sim.sim_node:main"]},
)
