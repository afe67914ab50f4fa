DROP TABLE document_version, document;
