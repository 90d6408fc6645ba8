-- One database per service (each service owns its data; none reads another's tables).
CREATE DATABASE identity;
CREATE DATABASE teams;
CREATE DATABASE projects;
CREATE DATABASE notifications;
