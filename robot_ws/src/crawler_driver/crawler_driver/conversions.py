"""Library records to ROS messages; the only place the driver builds message fields."""

from __future__ import annotations

import math

import numpy as np
from builtin_interfaces.msg import Time
from nav_msgs.msg import Odometry
from sensor_msgs.msg import BatteryState, Imu

from crawler.config import CrawlerConfig
from firmware_bridge.messages import Battery
from firmware_bridge.messages import Imu as ImuSample
from navigation.wheel_odometry import OdometryState

UNOBSERVED_VAR = 1e6
"""Variance reported for what wheel odometry does not observe (z, roll, pitch)."""
_TWIST_VAR = (0.02**2, 0.05**2)  # forward speed [m/s]^2, yaw rate [rad/s]^2 under track slip


def pose_covariance_6x6(cov_xyyaw: np.ndarray) -> list[float]:
    """Embed a 3x3 (x, y, yaw) covariance in ROS's row-major 6x6 (x, y, z, roll, pitch, yaw)."""
    full = np.diag([0.0, 0.0, UNOBSERVED_VAR, UNOBSERVED_VAR, UNOBSERVED_VAR, 0.0])
    index = [0, 1, 5]
    full[np.ix_(index, index)] = cov_xyyaw
    return [float(v) for v in full.ravel()]


def odometry_msg(odom: OdometryState, stamp: Time, config: CrawlerConfig) -> Odometry:
    """``nav_msgs/Odometry`` of the wheel odometry, with covariance."""
    msg = Odometry()
    msg.header.stamp = stamp
    msg.header.frame_id = config.frames.odom
    msg.child_frame_id = config.frames.base
    msg.pose.pose.position.x = odom.x_m
    msg.pose.pose.position.y = odom.y_m
    msg.pose.pose.orientation.z = math.sin(0.5 * odom.yaw_rad)
    msg.pose.pose.orientation.w = math.cos(0.5 * odom.yaw_rad)
    msg.pose.covariance = pose_covariance_6x6(odom.covariance_xyyaw)
    msg.twist.twist.linear.x = odom.linear_mps
    msg.twist.twist.angular.z = odom.angular_radps
    twist_cov = np.diag([_TWIST_VAR[0], UNOBSERVED_VAR, UNOBSERVED_VAR, UNOBSERVED_VAR,
                         UNOBSERVED_VAR, _TWIST_VAR[1]])
    msg.twist.covariance = [float(v) for v in twist_cov.ravel()]
    return msg


def imu_msg(sample: ImuSample, stamp: Time, config: CrawlerConfig) -> Imu:
    """``sensor_msgs/Imu`` with covariances from the configured noise."""
    imu = config.imu
    msg = Imu()
    msg.header.stamp = stamp
    msg.header.frame_id = config.frames.imu
    msg.orientation.x, msg.orientation.y = sample.quat_x, sample.quat_y
    msg.orientation.z, msg.orientation.w = sample.quat_z, sample.quat_w
    msg.angular_velocity.x = sample.gyro_x_radps
    msg.angular_velocity.y = sample.gyro_y_radps
    msg.angular_velocity.z = sample.gyro_z_radps
    msg.linear_acceleration.x = sample.accel_x_mps2
    msg.linear_acceleration.y = sample.accel_y_mps2
    msg.linear_acceleration.z = sample.accel_z_mps2
    tilt_var, yaw_var = imu.tilt_noise_rad**2, imu.yaw_noise_rad**2
    msg.orientation_covariance = _diag3(tilt_var, tilt_var, yaw_var)
    msg.angular_velocity_covariance = _diag3(*[imu.gyro_noise_radps**2] * 3)
    msg.linear_acceleration_covariance = _diag3(*[imu.accel_noise_mps2**2] * 3)
    return msg


def battery_msg(battery: Battery, stamp: Time) -> BatteryState:
    """``sensor_msgs/BatteryState``; current is negative while discharging (REP-145 style)."""
    msg = BatteryState()
    msg.header.stamp = stamp
    msg.voltage = float(battery.voltage_v)
    msg.current = -float(battery.current_a)
    msg.percentage = battery.percent / 100.0
    msg.power_supply_status = BatteryState.POWER_SUPPLY_STATUS_DISCHARGING
    msg.power_supply_technology = BatteryState.POWER_SUPPLY_TECHNOLOGY_LION
    msg.present = True
    return msg


def _diag3(a: float, b: float, c: float) -> list[float]:
    return [a, 0.0, 0.0, 0.0, b, 0.0, 0.0, 0.0, c]
