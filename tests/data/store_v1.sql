-- A store written by slmnode's first schema (version 1, commit 951c137), with a few rows.
BEGIN TRANSACTION;
CREATE TABLE corrections (
	id INTEGER NOT NULL, 
	description_id INTEGER NOT NULL, 
	label VARCHAR(16) NOT NULL, 
	who VARCHAR(200) NOT NULL, 
	note TEXT, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(description_id) REFERENCES descriptions (id)
);
INSERT INTO "corrections" VALUES(1,2,'DWI','radiographer','diffusion','2024-01-06 09:00:00.000000');
CREATE TABLE descriptions (
	id INTEGER NOT NULL, 
	text_hash VARCHAR(64) NOT NULL, 
	text TEXT NOT NULL, 
	status VARCHAR(8) NOT NULL, 
	label VARCHAR(16), 
	confidence FLOAT, 
	model_version VARCHAR(200), 
	mapped_at DATETIME, 
	first_seen DATETIME NOT NULL, 
	attempts INTEGER NOT NULL, 
	last_error TEXT, 
	PRIMARY KEY (id), 
	UNIQUE (text_hash)
);
INSERT INTO "descriptions" VALUES(1,'3dd3472f6c73a0165eb3d39a68e1aadfec6c1795cea3f877d194c8a1d9d722b2','t1_mprage_sag','mapped','T1',0.75,'rules-1','2024-01-05 10:00:00.000000','2024-01-05 09:00:00.000000',0,NULL);
INSERT INTO "descriptions" VALUES(2,'d3c33c42ccd80d05c1482f83965227f670e3e3c6f236a4f44199a7e57ca965c1','ep2d_diff','queued',NULL,NULL,NULL,NULL,'2024-01-05 09:00:00.000000',2,'RuntimeError: out of memory');
CREATE TABLE instances (
	id INTEGER NOT NULL, 
	sop_instance_uid VARCHAR(64) NOT NULL, 
	series_id INTEGER NOT NULL, 
	sop_class_uid VARCHAR(64), 
	transfer_syntax VARCHAR(64), 
	file_path TEXT, 
	received_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (sop_instance_uid), 
	FOREIGN KEY(series_id) REFERENCES series (id)
);
INSERT INTO "instances" VALUES(1,'1.2.826.0.1.3680043.8.498.11',1,'1.2.840.10008.5.1.4.1.1.4','1.2.840.10008.1.2.1',NULL,'2024-01-05 09:00:00.000000');
INSERT INTO "instances" VALUES(2,'1.2.826.0.1.3680043.8.498.12',1,'1.2.840.10008.5.1.4.1.1.4','1.2.840.10008.1.2.1',NULL,'2024-01-05 09:00:00.000000');
INSERT INTO "instances" VALUES(3,'1.2.826.0.1.3680043.8.498.13',2,'1.2.840.10008.5.1.4.1.1.4','1.2.840.10008.1.2.1',NULL,'2024-01-05 09:00:00.000000');
CREATE TABLE schema_version (
	version INTEGER NOT NULL
);
INSERT INTO "schema_version" VALUES(1);
CREATE TABLE series (
	id INTEGER NOT NULL, 
	series_uid VARCHAR(64) NOT NULL, 
	study_id INTEGER NOT NULL, 
	description_id INTEGER, 
	modality VARCHAR(16), 
	protocol_name TEXT, 
	manufacturer TEXT, 
	model_name TEXT, 
	body_part VARCHAR(64), 
	series_number INTEGER, 
	series_date VARCHAR(32), 
	first_seen DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (series_uid), 
	FOREIGN KEY(study_id) REFERENCES studies (id), 
	FOREIGN KEY(description_id) REFERENCES descriptions (id)
);
INSERT INTO "series" VALUES(1,'1.2.826.0.1.3680043.8.498.2',1,1,'MR',NULL,'SIEMENS',NULL,'BRAIN',11,NULL,'2024-01-05 09:00:00.000000');
INSERT INTO "series" VALUES(2,'1.2.826.0.1.3680043.8.498.3',1,2,'MR',NULL,'SIEMENS',NULL,'BRAIN',13,NULL,'2024-01-05 09:00:00.000000');
CREATE TABLE studies (
	id INTEGER NOT NULL, 
	study_uid VARCHAR(64) NOT NULL, 
	accession_number VARCHAR(64), 
	study_date VARCHAR(32), 
	patient_id VARCHAR(64), 
	patient_name VARCHAR(324), 
	first_seen DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (study_uid)
);
INSERT INTO "studies" VALUES(1,'1.2.826.0.1.3680043.8.498.1','A1','20240105',NULL,NULL,'2024-01-05 09:00:00.000000');
CREATE INDEX ix_descriptions_label ON descriptions (label);
CREATE INDEX ix_descriptions_confidence ON descriptions (confidence);
CREATE INDEX ix_descriptions_status ON descriptions (status);
CREATE INDEX ix_descriptions_first_seen ON descriptions (first_seen);
CREATE INDEX ix_corrections_description_id ON corrections (description_id);
CREATE INDEX ix_series_description_id ON series (description_id);
CREATE INDEX ix_series_study_id ON series (study_id);
CREATE INDEX ix_instances_series_id ON instances (series_id);
COMMIT;
