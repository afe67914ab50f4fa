DROP TABLE document_hold;
